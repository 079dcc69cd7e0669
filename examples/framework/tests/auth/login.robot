*** Settings ***
Documentation    Login and logout of registered customers.
Resource    resources/common.resource
Resource    resources/auth.resource
Suite Setup    Open Shop Session
Suite Teardown    Close Shop Session


*** Test Cases ***
SHOP-101 Login With Valid Credentials
    [Documentation]    A registered customer logs in with user name and password.
    [Tags]    SHOP-101    auth    smoke
    Login As    alice    Secret123!
    User Should Be Logged In    alice

SHOP-102 Login With Wrong Password Is Rejected
    [Documentation]    A wrong password is rejected without saying which part was wrong.
    [Tags]    SHOP-102    auth    regression
    Login Should Fail With Message    alice    WrongPass1!    Invalid username or password

SHOP-103 Locked Account Cannot Log In
    [Documentation]    A locked account cannot log in even with the right password.
    [Tags]    SHOP-103    auth    regression
    Login Should Fail With Message    carol    Locked123!    Account is locked    expected_status=423

SHOP-104 Logout Ends The Session
    [Documentation]    After logout the old session is no longer authenticated.
    [Tags]    SHOP-104    auth    smoke
    Login As    bob
    User Should Be Logged In    bob
    Logout
    User Should Be Logged Out
